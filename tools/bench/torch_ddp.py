"""PyTorch DDP (gloo, CPU) peer of `vktrain train` for tools/bench_vs_torch.sh.

Trains the same models on random data with 2 processes and prints one line:
  torch <model> <rate> <unit>
measured over the steps after the warm-up ones. Run with /usr/bin/python3
(Debian's python3-torch)."""
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.fc, self.out = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.heads = heads

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True) \
            if hasattr(F, "scaled_dot_product_attention") else attention(q, k, v)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


def attention(q, k, v):
    t = q.shape[2]
    att = (q @ k.transpose(-2, -1)) / (q.shape[-1] ** 0.5)
    att = att.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
    return F.softmax(att, dim=-1) @ v


class GPT(nn.Module):
    def __init__(self, vocab, ctx, layers, heads, c):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, c), nn.Embedding(ctx, c)
        self.blocks = nn.ModuleList(Block(c, heads) for _ in range(layers))
        self.lnf = nn.LayerNorm(c)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.lnf(x) @ self.wte.weight.t()


def worker(rank, world, kind, steps, warm, port, threads):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(rank)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                              nn.Linear(1024, 10))
        x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
        per_step, unit = 256 * world, "samples/s"
    else:
        model = GPT(256, 128, 4, 4, 256)
        x = torch.randint(0, 256, (16, 128))
        y = torch.randint(0, 256, (16, 128))
        per_step, unit = 16 * 128 * world, "tokens/s"
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
    for i in range(warm + steps):
        if i == warm:
            dist.barrier()
            t0 = time.perf_counter()
        out = ddp(x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        print(f"torch {kind} {steps * per_step / dt:.1f} {unit}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    kind, steps, warm, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    threads = max(1, (os.cpu_count() or 2) // 2)
    mp.spawn(worker, args=(2, kind, steps, warm, port, threads), nprocs=2)
