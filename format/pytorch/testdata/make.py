# Makes the torch.save archives the pytorch package's tests read.
# Run with Debian's python3-torch (1.13): /usr/bin/python3 make.py
import collections, os, torch

torch.manual_seed(0)
sd = collections.OrderedDict()
sd["f32"] = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4
sd["bf16"] = torch.tensor([1.0, -2.5, 3.0], dtype=torch.bfloat16)
sd["f16"] = torch.tensor([[0.5, 65504.0]], dtype=torch.float16)
sd["transposed"] = sd["f32"].t()  # a strided view of f32's storage
sd["offset"] = torch.arange(10, dtype=torch.float64)[4:7]  # storage offset 4
sd["i64"] = torch.tensor([7, -1], dtype=torch.int64)
sd["scalar"] = torch.tensor(2.0)
torch.save(sd, "state.pt")

# a module's state_dict carries _metadata (set through BUILD)
torch.save(torch.nn.Linear(2, 3).state_dict(), "linear.pt")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


torch.save({"w": torch.zeros(2), "evil": Evil()}, "evil.pt")
