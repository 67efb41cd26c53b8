"""The sandbox: student code runs only in a child process, answering plain-data requests.

`client.Sandbox` (parent side) starts the child under the best isolation
available (`isolation`), sends requests and reads replies through `protocol`;
`child` is the program inside, and `ops` the operations it can perform on the
student's namespace.
"""
