"""``dreamsound studio``: a local web page over the library (optional extra ``[studio]``).

- :mod:`dreamsound.studio.knobs`: the page's controls, read from
  :class:`~dreamsound.config.DreamConfig` (no gradio).
- :mod:`dreamsound.studio.workbench`: models, jobs with progress and cancel, session folders and
  the files of each dream, over :class:`dreamsound.api.Dreamer` (no gradio).
- :mod:`dreamsound.studio.app`: the Gradio page, a skin over the workbench (imports gradio).
"""

from __future__ import annotations
