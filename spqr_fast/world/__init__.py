"""A miniature trained world: procedural scenes, tiny trained models and judges, known answers."""
