"""A pyfunc model from code (`mlflow.models.set_model`) that returns its input: a real logged model for
tests of what happens around loading one, without training an agent."""

from typing import Any

from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class EchoModel(PythonModel):
    def predict(self, context: Any, model_input: list[str], params: dict[str, Any] | None = None) -> list[str]:
        return model_input


set_model(EchoModel())
