"""The dream engine: objectives, parameterisations (domains), DreamSound's rules, per-step
transforms, constraints, the one ascent loop, judges and results. Each part is a small module;
:mod:`dreamsound.api` composes them."""
