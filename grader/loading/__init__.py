"""Reading a submission folder: code files (.py, .ipynb) and answers (answers.yaml or an ANSWERS cell).

These functions parse student files but never run them; `grader.sandbox.child`
calls them inside the sandbox and executes only what `select` keeps.
"""
