# A custom Gradescope image for one assignment, for instructors who prefer it to
# uploading the zip. It is the zip made by `grader gradescope build`, unpacked
# where Gradescope unpacks it, with the same setup.sh run over it: so the image
# holds exactly what the zip holds (the rubric's support files, such as a
# unittest check's test file, and a course's own check kinds included) and
# installs the same pinned packages. Build the zip first, in this folder:
#
#   grader gradescope build --assignment hw4            # writes hw4_autograder.zip
#   docker build --build-arg ASSIGNMENT=hw4 -t COURSE/hw4-autograder .
#
# Gradescope runs /autograder/run_autograder in it for each submission.
FROM gradescope/autograder-base:ubuntu-22.04

ARG ASSIGNMENT=hw4

COPY ${ASSIGNMENT}_autograder.zip /tmp/autograder.zip

# What Gradescope does with an uploaded zip: unpack it into source/, install run_autograder, run setup.sh.
RUN mkdir -p /autograder/source \
    && python3 -m zipfile -e /tmp/autograder.zip /autograder/source \
    && rm /tmp/autograder.zip \
    && cp /autograder/source/run_autograder /autograder/run_autograder \
    && chmod 755 /autograder/run_autograder /autograder/source/run_autograder /autograder/source/setup.sh
RUN bash /autograder/source/setup.sh \
    && rm -rf /var/lib/apt/lists/* /root/.cache/pip
