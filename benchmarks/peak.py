"""The machine's float32 matmul peak through TensorFlow: what extraction speed is judged against.

Square n x n matmuls inside a `tf.function` (the same runtime and thread pool as extraction), best
of several repeats; 2 n^3 FLOPs each. The result is reduced to a scalar inside the function so no
64 MB copy back to numpy is timed.
"""
from __future__ import annotations

import time

from benchmarks.common import quiet_tf


def run(sizes: dict, ctx: dict) -> dict:
    quiet_tf()
    import tensorflow as tf

    @tf.function
    def mm(a, b):
        return tf.reduce_sum(tf.linalg.matmul(a, b))

    rows = []
    for n in sizes["sizes"]:
        a = tf.random.normal((n, n), dtype=tf.float32, seed=1)
        b = tf.random.normal((n, n), dtype=tf.float32, seed=2)
        mm(a, b).numpy()  # trace + warm the thread pool
        times = []
        for _ in range(sizes["repeats"]):
            t0 = time.perf_counter()
            mm(a, b).numpy()
            times.append(time.perf_counter() - t0)
        best = min(times)
        rows.append({"n": n, "best_seconds": best, "median_seconds": sorted(times)[len(times) // 2],
                     "gflops": 2 * n ** 3 / best / 1e9})
    peak = max(r["gflops"] for r in rows)
    ctx["peak_gflops"] = peak
    return {
        "method": "float32 n x n tf.linalg.matmul in a tf.function, 2n^3 FLOPs, best of "
                  f"{sizes['repeats']} repeats after one warm-up; peak = best over n. TF threads: "
                  f"intra-op {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}, "
                  f"inter-op {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}.",
        "rows": rows,
        "summary": {"peak_gflops": peak},
    }
