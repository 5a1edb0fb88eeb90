"""The zoo's forecasting model as MLflow loads it "from code": MLflow runs this file; nothing is unpickled.

``zoo.tracking.pyfunc.log_pyfunc_model`` logs this file as the model's code (``python_model=<path>``);
the checkpoint and metadata are the model's artifacts, read by ``load_context``.
"""

import mlflow

from zoo.tracking.pyfunc import SeriesPythonModel

mlflow.models.set_model(SeriesPythonModel())
