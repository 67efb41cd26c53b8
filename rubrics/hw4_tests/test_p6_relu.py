"""p6.relu as a Gradescope-style unittest file (the example of the ``unittest`` check kind).

It grades what the ``tensor_function`` check it replaces graded, for the same
5 points: ``mlp_layer_jacobians(A, b, y_prev, "relu")`` returns J_b (n×n) and
J_y (n×m) equal to the reference's, with the transposed J_y recognised and
explained. It runs in the grader's trusted process: ``self.student.call``
runs the student's function in the sandbox and returns numpy arrays,
``self.reference`` is reference/hw4.py, ``self.rng`` a seeded numpy Generator.
"""
import unittest

import numpy as np
import torch
from gradescope_utils.autograder_utils.decorators import number, partial_credit, weight

CASES = [(3, 4), (5, 2), (6, 6)]  # (n, m): n outputs, m inputs; the square case catches a transpose by value
RTOL, ATOL = 1e-4, 1e-5


class TestReluJacobians(unittest.TestCase):
    longMessage = False  # the messages below are written for students; unittest's own diff would only add noise

    def draw(self, n, m):
        A = self.rng.standard_normal((n, m)).astype(np.float32)
        b = self.rng.standard_normal(n).astype(np.float32)
        y_prev = self.rng.standard_normal(m).astype(np.float32)
        expected = self.reference.mlp_layer_jacobians(torch.from_numpy(A), torch.from_numpy(b),
                                                      torch.from_numpy(y_prev), "relu")
        got = self.student.call("mlp_layer_jacobians", A, b, y_prev, "relu")
        self.assertIsInstance(got, (list, tuple), "mlp_layer_jacobians should return the pair (J_b, J_y)")
        self.assertEqual(len(got), 2, "mlp_layer_jacobians should return the pair (J_b, J_y)")
        return [np.asarray(g) for g in got], [e.numpy() for e in expected]

    @weight(1)
    @number("6.4.1")
    def test_shapes(self):
        """J_b is n×n and J_y is n×m (one row per output)"""
        for n, m in CASES:
            with self.subTest(n=n, m=m):
                (j_b, j_y), _ = self.draw(n, m)
                self.assertEqual(j_b.shape, (n, n), f"J_b should be {n}×{n}, got shape {j_b.shape}")
                self.assertEqual(j_y.shape, (n, m), f"J_y should be {n}×{m} (one row per output y_j, one column "
                                                    f"per input), got shape {j_y.shape}")

    @partial_credit(4)
    @number("6.4.2")
    def test_values(self, set_score=None):
        """J_b and J_y equal the chain rule's, for each layer size"""
        right = 0
        for n, m in CASES:
            with self.subTest(n=n, m=m):
                (j_b, j_y), (e_b, e_y) = self.draw(n, m)
                np.testing.assert_allclose(j_b, e_b, rtol=RTOL, atol=ATOL, err_msg="J_b = dy/db is wrong")
                same = j_y.shape == e_y.shape and np.allclose(j_y, e_y, rtol=RTOL, atol=ATOL)
                transposed = j_y.shape == e_y.T.shape and np.allclose(j_y, e_y.T, rtol=RTOL, atol=ATOL)
                if transposed and not same:
                    self.fail("Your J_y is the transpose of the Jacobian. The Jacobian ∂y/∂y_prev has one row per "
                              "output y_j and one column per input (n×m): J_y[j, i] = ∂y_j/∂y_prev_i.")
                np.testing.assert_allclose(j_y, e_y, rtol=RTOL, atol=ATOL, err_msg="J_y = dy/dy_prev is wrong")
                right += 1
        set_score(4 * right / len(CASES))
