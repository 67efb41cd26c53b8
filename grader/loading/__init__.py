"""Submission intake in the trusted parent: which files a submission has, before any of them is read.

Parsing and running student files happens only in the sandboxed child (`grader.child.loading`).
"""
