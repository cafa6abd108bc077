"""r2ec: the shared model core of r2ec-serve.

Everything that defines what an R²ec model computes lives here exactly once (prompts, chat rendering, pooling,
scoring, metrics, the engine interface) so that export, serving, training and offline evaluation rank identically.
"""

__version__ = "0.1.0"
ANSWER = "<answer>"
