#!/usr/bin/python3
"""gen_gpt_train_ref.py - records 20 steps of torch 1.13 training of a tiny GPT (issue 21).

nanoGPT's GPT with bias=True, dropout 0 and weight tying (lm_head.weight = wte.weight, lm_head
without bias), as dpt's `--model gpt:L-H-C` builds it: wte, wpe, L pre-LayerNorm blocks (ln_1,
causal attn c_attn/c_proj, residual, ln_2, mlp c_fc 4C, exact GELU, c_proj, residual), ln_f,
lm_head. Loss: F.cross_entropy over all B*T positions; AdamW (one group: decay on every
parameter, torch's default); step s takes batch s % BATCHES. The file ref/gpt_train.txt holds
the configuration, the data (token windows and their next tokens), the initial parameters
(named_parameters: the tied weight once, as transformer.wte.weight, as dpt holds it), the loss
of each step, and the parameters after the last step. float32 on the CPU, one thread, seeded.
test_gpt_train_ref.c loads the initial parameters into dpt's model and compares.

Run with Debian's python3-torch:  /usr/bin/python3 tests/runtime/gen_gpt_train_ref.py

Format: `config <N> <steps> <batches> <T> <V> <L> <H> <C> <lr> <beta1> <beta2> <eps> <wd>`,
then tensors `t <name> <count> v v ...` (%.9g): x [batches * N, T] (token ids as floats),
y [batches * N, T], init.<param>, loss [steps], final.<param>; `end`.
"""
import os

import torch
import torch.nn.functional as F

from gen_layer_ref import CausalSelfAttention, line

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))

N, STEPS, BATCHES, T, V, L, H, C = 4, 20, 3, 8, 11, 2, 2, 16
LR, BETA1, BETA2, EPS, WD = 3e-3, 0.9, 0.95, 1e-8, 0.1


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(C)
        self.attn = CausalSelfAttention(C, H, T)
        self.ln_2 = torch.nn.LayerNorm(C)
        self.mlp = torch.nn.ModuleDict(dict(c_fc=torch.nn.Linear(C, 4 * C),
                                            c_proj=torch.nn.Linear(4 * C, C)))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))


class GPT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = torch.nn.ModuleDict(dict(
            wte=torch.nn.Embedding(V, C), wpe=torch.nn.Embedding(T, C),
            h=torch.nn.ModuleList(Block() for _ in range(L)), ln_f=torch.nn.LayerNorm(C)))
        self.lm_head = torch.nn.Linear(C, V, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # nanoGPT's weight tying

    def forward(self, idx):
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
        for b in self.transformer.h:
            x = b(x)
        return self.lm_head(self.transformer.ln_f(x))


def main():
    assert torch.__version__.startswith("1.13"), torch.__version__
    torch.manual_seed(21)
    net = GPT()
    with torch.no_grad():  # LayerNorm away from its (1, 0) start, so the test sees its params
        for m in net.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.add_(0.1 * torch.randn_like(m.weight))
                m.bias.add_(0.1 * torch.randn_like(m.bias))
    seq = torch.randint(0, V, (BATCHES * N, T + 1))
    x, y = seq[:, :T], seq[:, 1:]
    text = "# torch %s training, written by gen_gpt_train_ref.py; do not edit\n" % torch.__version__
    text += "config %d %d %d %d %d %d %d %d %.9g %.9g %.9g %.9g %.9g\n" % (
        N, STEPS, BATCHES, T, V, L, H, C, LR, BETA1, BETA2, EPS, WD)
    text += line("x", x.to(torch.float32)) + line("y", y.to(torch.float32))
    text += "".join(line("init." + k, v) for k, v in net.named_parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS,
                            weight_decay=WD)
    losses = []
    for s in range(STEPS):
        b = s % BATCHES
        opt.zero_grad()
        logits = net(x[b * N:(b + 1) * N])
        loss = F.cross_entropy(logits.reshape(-1, V), y[b * N:(b + 1) * N].reshape(-1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    text += line("loss", torch.tensor(losses, dtype=torch.float32))
    text += "".join(line("final." + k, v) for k, v in net.named_parameters())
    text += "end\n"
    with open(os.path.join(HERE, "ref", "gpt_train.txt"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
