"""The model zoo and loading/saving of Keras models."""
