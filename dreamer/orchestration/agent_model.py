"""MLflow "models from code" entry point of the agent pyfunc (see `dreamer.orchestration.pyfunc`).

MLflow copies this file into the logged model and runs it at load time; `set_model` names the model
object, so nothing is pickled. Not meant to be imported.
"""

from mlflow.models import set_model

from dreamer.orchestration.pyfunc import AgentModel

set_model(AgentModel())
