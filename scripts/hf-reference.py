#!/usr/bin/env python3
"""The reference for the default model (issue 3): a plain PyTorch + Hugging Face `transformers`
full fine-tune of all-MiniLM-L6-v2 on the RT snippets with the recipe of the model card (Trainer,
3 epochs, lr 5e-5, batch 32, 10% warm-up + linear decay, weight decay 0.01, max length 128,
length-grouped batches, best dev epoch kept), then accuracy on dev, RT test, tweets and NYT.

    bash scripts/fetch-minilm.sh
    pip install torch transformers accelerate     # not needed by tokenlens itself
    python3 scripts/hf-reference.py [SEED]        # -> target/hf-reference/results.json

Run on 2026-11-26 (CPU, torch 1.13.1, transformers 4.44.2, seed 42): see the model card.
"""
import csv, json, os, sys, time
import numpy as np
import torch
import transformers, accelerate
from transformers import (BertForSequenceClassification, PreTrainedTokenizerFast, Trainer,
                          TrainingArguments, DataCollatorWithPadding, TrainerCallback)

T0 = time.time()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "target/models/all-MiniLM-L6-v2")
DATA = os.path.join(ROOT, "fixtures/data")
OUT = os.path.join(ROOT, "target/hf-reference")
SEED = int(sys.argv[1]) if len(sys.argv) > 1 else 42
print("versions: torch", torch.__version__, "transformers", transformers.__version__,
      "accelerate", accelerate.__version__, "python", sys.version.split()[0], flush=True)
print("torch threads", torch.get_num_threads(), flush=True)

def read_tsv(path):
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(r)
        li, ti = header.index("label"), header.index("text")
        rows = [(int(row[li]), row[ti]) for row in r]
    return rows

tok = PreTrainedTokenizerFast(tokenizer_file=MODEL + "/tokenizer.json", unk_token="[UNK]", sep_token="[SEP]",
                              pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
hw = tok("Hello world")["input_ids"]
print("tokenizer check 'Hello world' ->", hw, flush=True)
assert hw[0] == 101 and hw[-1] == 102

class DS(torch.utils.data.Dataset):
    def __init__(self, rows):
        enc = tok([t for _, t in rows], truncation=True, max_length=128)
        self.items = [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                       "attention_mask": enc["attention_mask"][i], "labels": rows[i][0]} for i in range(len(rows))]
    def __len__(self): return len(self.items)
    def __getitem__(self, i): return self.items[i]

sets = {"train": "rt-snippets.train.tsv", "dev": "rt-snippets.dev.tsv", "test": "rt-snippets.test.tsv",
        "tweets": "vader-tweets.tsv", "nyt": "vader-nytEditorialSnippets.tsv"}
ds = {k: DS(read_tsv(os.path.join(DATA, v))) for k, v in sets.items()}
print("sizes", {k: len(v) for k, v in ds.items()}, flush=True)

model, info = BertForSequenceClassification.from_pretrained(MODEL, num_labels=2, output_loading_info=True)
print("loading info", info, flush=True)

def compute_metrics(p):
    preds = np.argmax(p.predictions, axis=-1)
    return {"accuracy": float((preds == p.label_ids).mean())}

class EpochTimer(TrainerCallback):
    def on_epoch_end(self, args, state, control, **kw):
        print(f"[epoch {state.epoch:.2f} ended at step {state.global_step}, wall {time.time()-T0:.0f}s]", flush=True)
    def on_evaluate(self, args, state, control, metrics=None, **kw):
        print(f"[eval epoch {state.epoch} step {state.global_step}: {metrics}, wall {time.time()-T0:.0f}s]", flush=True)

args = TrainingArguments(
    output_dir=OUT, overwrite_output_dir=True, num_train_epochs=3, learning_rate=5e-5,
    per_device_train_batch_size=32, per_device_eval_batch_size=64, warmup_ratio=0.1,
    lr_scheduler_type="linear", weight_decay=0.01, seed=SEED, eval_strategy="epoch", save_strategy="epoch",
    save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="accuracy", greater_is_better=True,
    group_by_length=True, use_cpu=True, fp16=False, bf16=False, logging_steps=10, report_to="none",
    dataloader_num_workers=0, disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["dev"],
                  data_collator=DataCollatorWithPadding(tok), compute_metrics=compute_metrics,
                  callbacks=[EpochTimer()])
t_train = time.time()
tr = trainer.train()
train_wall = time.time() - t_train
print("train result", tr, flush=True)
print("best checkpoint", trainer.state.best_model_checkpoint, "best metric", trainer.state.best_metric, flush=True)
per_epoch = [(h["epoch"], h["eval_accuracy"]) for h in trainer.state.log_history if "eval_accuracy" in h]
res = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__},
       "loading_info": info, "dev_acc_per_epoch": per_epoch, "best_checkpoint": trainer.state.best_model_checkpoint,
       "train_wall_s": train_wall}
for k in ["dev", "test", "tweets", "nyt"]:
    m = trainer.evaluate(ds[k], metric_key_prefix=k)
    res[k + "_accuracy"] = m[k + "_accuracy"]
    print(f"FINAL {k}: acc={m[k+'_accuracy']:.4f} n={len(ds[k])}", flush=True)
res["total_wall_s"] = time.time() - T0
print("RESULTS", json.dumps(res), flush=True)
json.dump(res, open(os.path.join(OUT, "results.json"), "w"), indent=1)
