"""The VILA² pipeline: the recipe, a run folder of resumable steps, the loop, and the report."""
