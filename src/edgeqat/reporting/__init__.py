"""What people read: the Markdown tables and summaries (``tables``), the HTML report (``html``),
every matplotlib figure (``plots``), the recommendation write-up (``recommendation``) and the CI
run's report (``ci``). Pure functions over the dicts the steps write; no MLflow, no TensorFlow."""
