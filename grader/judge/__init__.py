"""The judge: verdicts on students' models computed in a process that holds no student code.

The sandbox child exports the student's model (`torch.export`) and sends its
graph as plain data; `grader.judge.graph` validates it against an allow-list
of standard ATen ops and rebuilds it as a torch.fx GraphModule;
`grader.judge.worker` measures it (parameter counts, outputs, connectivity,
training and evaluation) in a process forked from the trusted parent by
`grader.judge.server`, under memory, CPU and time limits. This package
imports only itself and the shared modules, never `grader.child`.
"""
