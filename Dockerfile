# A custom Gradescope image for one assignment, for instructors who prefer it to
# uploading the zip. It is the zip made by `grader gradescope build` in image
# form: the same files in the same places (grader/gradescope/layout.py; a test
# compares the COPY lines below with it) and the same setup.sh, so the same
# pinned packages (tests/test_gradescope_build.py checks both).
#
#   docker build --build-arg ASSIGNMENT=hw4 -t COURSE/hw4-autograder .
#
# Gradescope runs /autograder/run_autograder in it for each submission.
FROM gradescope/autograder-base:ubuntu-22.04

ARG ASSIGNMENT=hw4
# The rubric's `reference:` module; the same name as the assignment unless the rubric says otherwise.
ARG REFERENCE=${ASSIGNMENT}

COPY grader/gradescope/files/setup.sh /autograder/source/setup.sh
COPY grader/gradescope/files/run_autograder /autograder/source/run_autograder
COPY grader /autograder/source/grader
COPY rubrics/${ASSIGNMENT}.yaml /autograder/source/rubrics/${ASSIGNMENT}.yaml
COPY reference/__init__.py /autograder/source/reference/__init__.py
COPY reference/${REFERENCE}.py /autograder/source/reference/${REFERENCE}.py
COPY requirements/common.txt /autograder/source/requirements/common.txt
COPY grader/gradescope/files/torch-cpu.txt /autograder/source/requirements/torch-cpu.txt

# What Gradescope does with an uploaded zip: run setup.sh, install run_autograder.
RUN find /autograder/source -name __pycache__ -prune -exec rm -rf {} + \
    && cp /autograder/source/run_autograder /autograder/run_autograder \
    && chmod 755 /autograder/run_autograder \
    && bash /autograder/source/setup.sh \
    && rm -rf /var/lib/apt/lists/* /root/.cache/pip
