"""`python -m model.training --out DIR`: the demo model's training recipe (`model/training/recipe.py`)."""

from model.training.recipe import main

if __name__ == "__main__":
    main()
