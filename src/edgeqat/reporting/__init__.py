"""What people read: the Markdown tables and summaries (``tables``) and the HTML report
(``html``). Pure functions over the summary dicts the steps write; no MLflow, no TensorFlow."""
