"""The zoo's text model as MLflow loads it "from code": MLflow runs this file; nothing is unpickled.

``zoo.tracking.pyfunc.log_pyfunc_model`` logs this file as the model's code (``python_model=<path>``);
the checkpoint, tokenizer and metadata are the model's artifacts, read by ``load_context``.
"""

import mlflow

from zoo.tracking.pyfunc import TextPythonModel

mlflow.models.set_model(TextPythonModel())
