"""TFLite conversion and running .tflite files through LiteRT."""
