"""The progressive training recipe that builds the built-in demo model (`model/demo`) on CPU from
synthetic images and videos, and the demo media drawn like its data. Run the recipe with
`python -m model.training --out DIR` (or `python examples/train_demo_model.py --out DIR`).

- `synthetic`: seeded items (images, videos, questions, exact answers) for every task.
- `architecture`: the demo model's sizes and its three mixer layouts; `build_model`.
- `tokenizer`: the BPE trained on the tasks' text.
- `batches`: items -> model inputs, and the training loss on answer tokens.
- `vision_pretraining`: stage 0, the CLIP tower on frame attributes.
- `stages`: stages I-IV, each step's data as a function of (seed, step), the learning rate.
- `train`: the resumable training loop.
- `export`: the trained model as a LongLLaVA checkpoint folder.
- `evaluation`: greedy answers on fresh items through the inference path.
- `recipe`: the command line (`main`).
- `demo_media`: the committed demo files of `examples/` and their questions and answers.
"""
