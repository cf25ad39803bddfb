"""Cost of MAny's LPM merge (methods/many.py) on random statistics: wall time and peak memory per task.

For one group of adapted layers that read the same input (width d = in_features; ``--modules`` layers of
``--out`` outputs each, e.g. q/k/v of LLaMA-7B: 3 x 4096), tasks t = 1..T arrive one after the other:
  recursive (what many.py does): P <- P - P (I + G_t P)^{-1} G_t P; W^T <- W^T + P G_t (T_t^T - W^T),
      state = P (d x d) + W (out x d per layer), whatever t;
  batch closed form (for comparison): W^T = (sum_i G_i + gamma I)^{-1} sum_i G_i T_i^T, which must keep every
      G_i (and T_i): its state grows with t.
State (P, W) and Grams stored in ``--dtype`` (float64, or float32 as ``--set lpm_dtype=float32``), each update
computed in float64 as many.py does, on the CPU; the relative difference is against the float64 closed form. Peak memory = the largest resident-set increase over the pre-merge RSS,
sampled every 2 ms in a thread; glibc is told to mmap every block over 64 KiB so that freed tensors leave
the RSS at once (approximate: sampling can miss a short peak). Wall seconds depend on the machine's load;
CPU seconds (all threads of the process) much less.
It also prints the memory the merge needs for a full LLaVA-1.5-7B (LLaMA-7B LM) per ``lpm_dtype`` and
``lpm_groups_per_pass`` (the Grams of one pass over the statistics sample exist at a time).

    python tools/bench_many_merge.py --widths 1024,2048,4096 --tasks 6 --dtype float32
"""
from __future__ import annotations

import argparse
import ctypes
import os
import threading
import time

import torch

from mcit_bench.methods.many import batch_merge, rls_inverse_update_gram, rls_weight_update

GB = 1e9


def _malloc_small_threshold() -> None:
    try:  # M_MMAP_THRESHOLD = -3 (glibc): big blocks go straight to mmap and back to the OS when freed
        ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)
    except OSError:
        pass


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Largest RSS increase over the value at entry, sampled in a background thread."""

    def __enter__(self) -> "PeakRSS":
        self.base = rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra(self) -> int:
        return self.peak - self.base


def random_task(d: int, out: int, modules: int, rank: int, tokens: int, gen: torch.Generator):
    """Per-token Gram of random activations (rank <= tokens) and rank-r LoRA updates ((alpha/r) B A)^T."""
    x = torch.randn(tokens, d, dtype=torch.float64, generator=gen) * torch.rand(d, dtype=torch.float64, generator=gen)
    G = x.T @ x / tokens
    deltas = [(torch.randn(d, rank, dtype=torch.float64, generator=gen) @
               torch.randn(rank, out, dtype=torch.float64, generator=gen)) * 0.01 for _ in range(modules)]
    return G, deltas


def bench_width(d: int, out: int, modules: int, n_tasks: int, rank: int, tokens: int, gamma_rel: float,
                batch: bool, dtype: torch.dtype = torch.float64) -> None:
    gen = torch.Generator().manual_seed(d)
    P = W = None
    grams, targets = [], [[] for _ in range(modules)]
    print(f"\n== width d={d}, {modules} layer(s) of {out} outputs, rank-{rank} updates, Gram of {tokens} tokens, "
          f"{torch.get_num_threads()} threads, state stored in {str(dtype).replace('torch.', '')}")
    print("task | recursive: wall s  CPU s  peak MB  state MB | batch closed form: wall s  CPU s  peak MB  state MB"
          " | rel diff")
    for t in range(1, n_tasks + 1):
        G, deltas = random_task(d, out, modules, rank, tokens, gen)
        if P is None:
            gamma = gamma_rel * float(G.diagonal().mean())
            P = torch.eye(d, dtype=dtype) / gamma
            W = [torch.zeros(d, out, dtype=dtype) for _ in range(modules)]
        G_low = G.to(dtype)  # the Gram as collected
        start, cpu = time.perf_counter(), time.process_time()
        with PeakRSS() as mem:
            G64 = G_low.double()
            P64 = rls_inverse_update_gram(P.double(), G64)
            # lpm_train_on=merged: the task ends at T_t = W_{t-1} + delta_t
            new_targets = [w.double() + delta for w, delta in zip(W, deltas)]
            W = [rls_weight_update(P64, G64, w.double(), target).to(dtype) for w, target in zip(W, new_targets)]
            P = P64.to(dtype)
            del G64, P64
        rec_s, rec_cpu, rec_peak = time.perf_counter() - start, time.process_time() - cpu, mem.extra
        rec_state = (P.numel() + sum(w.numel() for w in W)) * P.element_size()
        line = f"{t:4d} | {rec_s:17.2f} {rec_cpu:6.2f} {rec_peak / 1e6:8.0f} {rec_state / 1e6:9.0f} |"
        if batch:
            grams.append(G)
            for k in range(modules):
                targets[k].append(new_targets[k].double())
            start, cpu = time.perf_counter(), time.process_time()
            with PeakRSS() as mem:
                W_batch = [batch_merge(grams, targets[k], gamma) for k in range(modules)]
            b_s, b_cpu, b_peak = time.perf_counter() - start, time.process_time() - cpu, mem.extra
            b_state = (sum(g.numel() for g in grams) + sum(x.numel() for ts in targets for x in ts)) * 8
            diff = max(float((w.double() - wb).norm() / wb.norm()) for w, wb in zip(W, W_batch))
            line += f" {b_s:25.2f} {b_cpu:6.2f} {b_peak / 1e6:8.0f} {b_state / 1e6:9.0f} | {diff:.1e}"
            del W_batch
        else:
            line += " (skipped)"
        print(line, flush=True)
        del G, deltas, new_targets, G_low


def llava7b_merge_peak(per_pass: int, nbytes: int) -> float:
    """GB the merge of one task needs for LLaVA-1.5-7B: state (P + W) and the Grams of the largest pass in the
    storage dtype + the float64 update of the widest group (about 10 d x d: P, G, G P, I + G P, the solution,
    P_new and its symmetrisation)."""
    layers, h, m = 32, 4096, 11008
    groups = [h, h, h, m] * layers  # q/k/v, o, gate/up, down of each layer: the order many.py merges them in
    outputs = [(h, 3 * h), (h, h), (h, 2 * m), (m, h)] * layers  # (in, total out of the group's layers)
    state = sum(d * d for d in groups) + sum(i * o for i, o in outputs)
    per_pass = per_pass or len(groups)
    grams = max(sum(d * d for d in groups[k:k + per_pass]) for k in range(0, len(groups), per_pass))
    return ((state + grams) * nbytes + 10 * max(groups) ** 2 * 8) / GB


def llava7b_memory() -> None:
    """Stored LPM state for LLaVA-1.5-7B: LLaMA-7B, 32 layers, hidden 4096, MLP 11008, all 7 linears adapted."""
    layers, h, m = 32, 4096, 11008
    linears = {"q_proj": (h, h), "k_proj": (h, h), "v_proj": (h, h), "o_proj": (h, h),
               "gate_proj": (h, m), "up_proj": (h, m), "down_proj": (m, h)}  # name: (in, out)
    per_layer_gram = sum(i * i for i, _ in linears.values())
    shared_inputs = [h, h, h, m]  # q/k/v share one input, o, gate/up share one, down
    per_layer_shared = sum(i * i for i in shared_inputs)
    per_layer_w = sum(i * o for i, o in linears.values())
    f64 = 8
    print(f"\n== stored statistics for LLaVA-1.5-7B (LLaMA-7B: {layers} layers x {len(linears)} adapted linears "
          f"= {layers * len(linears)} layers)")
    print(f"one Gram / inverse Gram per adapted layer (in_features^2, float64): "
          f"{per_layer_gram * f64 / GB:.3f} GB per LLaMA layer, {layers * per_layer_gram * f64 / GB:.1f} GB in all")
    print(f"shared by layers reading the same input (q/k/v, gate/up; what many.py does): "
          f"{per_layer_shared * f64 / GB:.3f} GB per LLaMA layer, {layers * per_layer_shared * f64 / GB:.1f} GB in all")
    print(f"merged update W (dense out x in per adapted layer): {layers * per_layer_w / 1e9:.2f} G entries = "
          f"{layers * per_layer_w * f64 / GB:.1f} GB in float64, {layers * per_layer_w * 4 / GB:.1f} GB in float32")
    print(f"=> recursive LPM keeps P + W: {layers * (per_layer_shared + per_layer_w) * f64 / GB:.1f} GB (float64) "
          f"for any number of tasks; during a merge the new task's Grams add {layers * per_layer_shared * f64 / GB:.1f} GB "
          f"(they are not kept)")
    print(f"=> a batch re-solve after task t keeps t Grams: t x {layers * per_layer_shared * f64 / GB:.1f} GB "
          f"(t = 6: {6 * layers * per_layer_shared * f64 / GB:.1f} GB) plus the T_i targets")
    n_groups = 4 * layers
    print("\n== memory of one merge for LLaVA-1.5-7B (P + W + the Grams of one pass + the float64 update of one group),"
          " GB, by lpm_dtype")
    print("lpm_groups_per_pass | passes over the sample | float64 | float32")
    for per_pass in (0, 64, 16, 4, 1):
        passes = 1 if per_pass == 0 else -(-n_groups // per_pass)
        print(f"{per_pass:19d} | {passes:22d} | {llava7b_merge_peak(per_pass, 8):7.1f} | "
              f"{llava7b_merge_peak(per_pass, 4):7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="1024,2048,4096", help="comma-separated in_features d")
    ap.add_argument("--out", type=int, default=0, help="outputs per layer (0: = d, a square q/k/v/o-like layer)")
    ap.add_argument("--modules", type=int, default=1, help="layers sharing the input (3 for q/k/v)")
    ap.add_argument("--tasks", type=int, default=6)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=2048, help="tokens behind each random Gram")
    ap.add_argument("--gamma", type=float, default=1e-2, help="relative ridge, as lpm_gamma")
    ap.add_argument("--no-batch", action="store_true", help="skip the batch closed-form comparison")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="as --set lpm_dtype")
    args = ap.parse_args()
    _malloc_small_threshold()
    if args.threads:
        torch.set_num_threads(args.threads)
    for d in (int(w) for w in args.widths.split(",")):
        bench_width(d, args.out or d, args.modules, args.tasks, args.rank, args.tokens, args.gamma, not args.no_batch,
                    getattr(torch, args.dtype))
    llava7b_memory()


if __name__ == "__main__":
    main()
