"""`hitl embed`: one image vector per image and model, from an embedding server (vLLM), a local ONNX
image encoder or an offline baseline; stored in the database for the steps that compare images."""
