"""`hitl vllm`: a local vLLM model server for `score` or `embed`, sized to the GPUs it finds.

The GPUs and their free memory (:mod:`hitl.vllm.gpus`), the model and flags that fit them
(:mod:`hitl.vllm.sizing`, pure), and the server run as `hitl studio` runs Label Studio
(:mod:`hitl.vllm.server`). vLLM itself is an optional extra (`pip install "hero-hitl[vllm]"`, or
`$VLLM_BIN`): nothing else needs it.
"""
