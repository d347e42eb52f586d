"""Train the small demo LongLLaVA on synthetic images and videos, on CPU, and write it as a real
LongLLaVA checkpoint directory that `model.load_model` reads. The recipe is the package
`model/training/` (`model/training/recipe.py` documents it); this script is its command line:

    python examples/train_demo_model.py --out benchmarks/out/demo   # stages 0-IV, export, evaluate
    python examples/train_demo_model.py --help
"""

from model.training.recipe import main

if __name__ == "__main__":
    main()
