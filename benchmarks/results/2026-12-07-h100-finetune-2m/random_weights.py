# Random weights of SmolLM2-135M's shapes as a Hugging Face directory (for the warm-up run:
# the kernels compiled and tuned depend on shapes, not values).
import shutil, sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM
source, target = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig.from_pretrained(source))
model.save_pretrained(target, safe_serialization=True)
shutil.copy(f"{source}/tokenizer.json", target)
