"""grader: an autograder for deep-learning coursework."""
