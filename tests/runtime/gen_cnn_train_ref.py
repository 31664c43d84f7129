#!/usr/bin/python3
"""gen_cnn_train_ref.py - records 20 steps of torch 1.13 training of a small CNN (issue 19).

conv2d(1->4, 3x3, padding 1) -> batchnorm2d -> relu -> maxpool2d(2) -> dropout(0.25) ->
flatten -> linear(64->3), softmax cross-entropy (mean over the batch), SGD with momentum, on
fixed data: step s takes batch s % BATCHES. Dropout uses dpt's mask (dpt_layer_hash_uniform
of (seed, step, sample in the step's batch, layer index 4, element), computed here as net.c
does), so test_cnn_train_ref.c can build the same dpt_net and compare. The file
ref/cnn_train.txt holds the configuration, the data, the initial parameters (torch's
initialisation), the loss of each step, and the parameters and BatchNorm buffers after the
last step. Everything is float32 on the CPU, one thread, seeded.

Run with Debian's python3-torch:  /usr/bin/python3 tests/runtime/gen_cnn_train_ref.py

Format: `config <N> <steps> <batches> <lr> <momentum> <p> <seed>`, then tensors
`t <name> <count> v v ...` (%.9g): x [batches * N, 1, 8, 8], labels, init.<param>,
loss [steps], final.<param>, final.<buffer>; `end`.
"""
import os

import torch
import torch.nn.functional as F

from gen_layer_ref import dropout_mask, line, torch_dropout

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))

N, STEPS, BATCHES, LR, MOMENTUM, P, SEED, CLASSES = 8, 20, 4, 0.05, 0.9, 0.25, 1234, 3
DROP_LAYER = 4  # conv 0, bn 1, relu 2, pool 3, drop 4, flat 5, fc 6


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(64, CLASSES)

    def forward(self, x, step):
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        mask = dropout_mask(h.shape[1:], h.shape[0], P, SEED, step, 0, DROP_LAYER)
        h = torch_dropout(h, mask, P)
        return self.fc(torch.flatten(h, 1))


def main():
    assert torch.__version__.startswith("1.13"), torch.__version__
    torch.manual_seed(19)
    net = Net()
    x = torch.randn(BATCHES * N, 1, 8, 8)
    labels = torch.randint(0, CLASSES, (BATCHES * N,))
    text = "# torch %s training, written by gen_cnn_train_ref.py; do not edit\n" % torch.__version__
    text += "config %d %d %d %.9g %.9g %.9g %d\n" % (N, STEPS, BATCHES, LR, MOMENTUM, P, SEED)
    text += line("x", x) + line("labels", labels.to(torch.float32))
    text += "".join(line("init." + k, v) for k, v in net.named_parameters())
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    losses = []
    for s in range(STEPS):
        b = s % BATCHES
        opt.zero_grad()
        loss = F.cross_entropy(net(x[b * N:(b + 1) * N], s), labels[b * N:(b + 1) * N])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    text += line("loss", torch.tensor(losses, dtype=torch.float32))
    text += "".join(line("final." + k, v) for k, v in net.named_parameters())
    text += "".join(line("final." + k, v.to(torch.float32)) for k, v in net.named_buffers())
    text += "end\n"
    os.makedirs(os.path.join(HERE, "ref"), exist_ok=True)
    with open(os.path.join(HERE, "ref", "cnn_train.txt"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
