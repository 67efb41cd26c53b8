"""Everything the sandboxed child process imports: loading student code and the operations that call it.

The child runs student code, so nothing here may decide a verdict. It imports only this package,
the shared message module `grader.protocol` and the shared compute libraries (`grader.training.harness`,
`fitting`, `loops`, `grader.models`); `tests/test_layers.py` enforces that, and that the trusted parent
never imports this package (it starts the child by a constant bootstrap string).
"""
