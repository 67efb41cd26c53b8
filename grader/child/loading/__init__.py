"""Reading student files inside the sandbox: notebooks as Python, which statements run at load, answers."""
