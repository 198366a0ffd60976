"""Compare the Triton forget-mult kernels with the reference loop (values and gradients), and on a
GPU also the PTB QRNN's first layer in fp32 and under fp16 / bf16 autocast against float64.

On a GPU machine:   python scripts/bench/check_forget_mult_cuda.py [--bench]
                    python scripts/bench/bench_qrnn_vs_lstm.py --device cuda --updates 200 --rounds 2
Without a GPU, the same kernels run on CPU tensors in Triton's interpreter (slow, small shapes):
                    python scripts/bench/check_forget_mult_cuda.py --interpret
Needs Triton installed. Prints one line per case; exits 1 on any mismatch, 2 without CUDA or Triton.
"""
import argparse
import importlib.util
import logging
import os
import sys
import time


def check_layer_on_cuda(torch) -> int:
    """The PTB QRNN's first layer on CUDA (fp32, and fp16 / bf16 under autocast) against float64 on the CPU."""
    from awd_fairseq.modules.qrnn import QRNNLayer

    torch.manual_seed(0)
    layer = QRNNLayer(400, 1550, window=2).double()
    x = torch.randn(70, 20, 400, dtype=torch.float64, requires_grad=True)
    state = (torch.randn(20, 1550, dtype=torch.float64), torch.randn(20, 400, dtype=torch.float64))
    h, _ = layer(x, state)
    g = torch.randn_like(h)
    ref_grads = torch.autograd.grad(h, (x, layer.linear.weight), g)
    failures = 0
    for dtype, tol in ((torch.float32, 1e-4), (torch.float16, 3e-2), (torch.bfloat16, 2e-1)):
        cuda_layer = QRNNLayer(400, 1550, window=2).cuda()
        cuda_layer.load_state_dict(layer.state_dict())
        xc = x.detach().float().cuda().requires_grad_(True)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            hc, _ = cuda_layer(xc, tuple(s.float().cuda() for s in state))
        grads = torch.autograd.grad(hc, (xc, cuda_layer.linear.weight), g.to(hc.dtype).cuda())
        errs = [(hc.double().cpu() - h).abs().max().item()]
        errs += [(a.double().cpu() - b).abs().max().item() / (1 + b.abs().max().item()) for a, b in zip(grads, ref_grads)]
        ok = all(e <= tol for e in errs)
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} QRNN layer 400->1550 window 2 on CUDA, {dtype}: max err h={errs[0]:.2e} "
              f"grads(rel)={', '.join(f'{e:.2e}' for e in errs[1:])}")
    return failures


def main(args: argparse.Namespace) -> int:
    """Runs the checks; returns the exit status: 0 all passed, 1 a case failed, 2 no CUDA device."""
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # must be set before triton is imported

    import torch

    from awd_fairseq.modules.forget_mult import forget_mult, forget_mult_reference, forget_mult_torch

    device = "cpu" if args.interpret else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        logging.error("no CUDA device; use --interpret to run the kernels on CPU")
        return 2
    if importlib.util.find_spec("triton") is None:
        logging.error("Triton is not installed: pip install triton (the kernels are written in it)")
        return 2
    from awd_fairseq.modules.forget_mult_triton import forget_mult_triton
    torch.manual_seed(0)
    shapes = [(1, 1, 1), (5, 3, 7), (37, 4, 130)] if args.interpret else [(1, 1, 1), (5, 3, 7), (70, 20, 1550), (300, 8, 257)]
    tolerances = {torch.float32: 2e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}
    failures = 0
    for dtype, tol in tolerances.items():
        for T, B, H in shapes:
            for with_c0 in (False, True):
                # f, z as strided chunks of one projection, as the QRNN layer passes them
                gates = torch.randn(T, B, 3 * H, device=device, dtype=torch.float64)
                f64 = torch.sigmoid(gates[..., :H] * 3)
                f64[0, 0, 0] = 1.0  # exact extremes
                f64[-1, -1, -1] = 0.0
                z64 = torch.tanh(gates[..., H : 2 * H])
                c064 = torch.randn(B, H, device=device, dtype=torch.float64) if with_c0 else None
                g = torch.randn(T, B, H, device=device, dtype=torch.float64)
                leaves = [t for t in (f64, z64, c064) if t is not None]
                for leaf in leaves:
                    leaf.requires_grad_(True)
                ref = forget_mult_reference(f64, z64, c064)
                ref_grads = torch.autograd.grad(ref, leaves, g)
                inputs = [t.detach().to(dtype).requires_grad_(True) for t in leaves]
                f, z = inputs[0], inputs[1]
                c0 = inputs[2] if with_c0 else None
                out = forget_mult_triton(f, z, c0)
                grads = torch.autograd.grad(out, inputs, g.to(dtype))
                errs = [(out.double() - ref).abs().max().item()]
                errs += [(a.double() - b).abs().max().item() / (1 + b.abs().max().item()) for a, b in zip(grads, ref_grads)]
                ok = all(e <= tol for e in errs)
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {str(dtype):15s} T,B,H={T},{B},{H} c0={with_c0}: "
                      f"max err c={errs[0]:.2e} grads(rel)={', '.join(f'{e:.2e}' for e in errs[1:])}")
    if device == "cuda":
        x = torch.rand(4, 2, 3, device=device, requires_grad=True)
        picked = type(forget_mult(x, x).grad_fn).__name__
        failures += picked != "ForgetMultTritonBackward"
        print("dispatcher on CUDA picks:", picked)
    if device == "cuda":
        failures += check_layer_on_cuda(torch)
    if args.bench and device == "cuda":
        f = torch.rand(70, 20, 1550, device=device, requires_grad=True)
        z = torch.randn(70, 20, 1550, device=device, requires_grad=True)
        for name, fn in (("triton", forget_mult_triton), ("torch", forget_mult_torch), ("reference", forget_mult_reference)):
            for _ in range(3):
                fn(f, z).sum().backward()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(20):
                fn(f, z).sum().backward()
            torch.cuda.synchronize()
            print(f"{name:10s} fwd+bwd T=70 B=20 H=1550: {(time.perf_counter() - start) / 20 * 1e3:.3f} ms")
    print(f"{failures} failed")
    return 1 if failures else 0


def cli_main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interpret", action="store_true", help="run under TRITON_INTERPRET=1 on CPU")
    parser.add_argument("--bench", action="store_true", help="also time kernel vs torch path on CUDA")
    sys.exit(main(parser.parse_args()))


if __name__ == "__main__":
    cli_main()
