"""The studio's page: a Gradio skin over :class:`~dreamsound.studio.workbench.Studio`.

Everything a control does is a call into the workbench (and through it into
:class:`dreamsound.api.Dreamer`); this module only lays out components, turns results into what
the components show, and turns the library's errors into the page's one-line error toasts
(:class:`gradio.Error`). The knobs come from :mod:`dreamsound.studio.knobs` (that is, from
:class:`~dreamsound.config.DreamConfig`), so a new knob appears here without an edit.

Offline by construction: analytics and Hugging Face telemetry are switched off before gradio is
imported, the theme uses the system's fonts (no font files fetched from anywhere), there is no
share link, no run history, no server-side rendering and no MCP server.
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import os
from collections.abc import Iterator, Sequence
from typing import Any

# Before gradio is imported: nothing may phone home (gradio reads these when it starts).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import gradio as gr

from dreamsound.config import PANELS, SONIFY_STYLE
from dreamsound.errors import DreamsoundError
from dreamsound.events import ProgressEvent
from dreamsound.studio.knobs import (
    KnobControl,
    config_from_values,
    main_and_advanced,
    sonify_controls,
)
from dreamsound.studio.workbench import (
    GENERATED_STARTS,
    Cancelled,
    DreamEntry,
    Job,
    Studio,
    model_choices,
)

#: System font stacks: the page loads no font file at all.
SYSTEM_FONTS = ("system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
                "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")

CSS = """
#status { min-height: 2.2em; font-variant-numeric: tabular-nums; }
#status progress { width: 14em; vertical-align: middle; margin-right: .6em; }
.ds-report table { font-variant-numeric: tabular-nums; }
.ds-error { color: #b91c1c; }
"""

#: Columns of the session gallery's table.
GALLERY_COLUMNS = ["#", "input", "target", "model", "domain", "steps", "conf. before",
                   "conf. after", "conf. rendered", "rmse_db", "seconds"]

_CONCURRENCY_ID = "model"  # every event that runs the model shares one queue slot


def theme() -> gr.themes.Base:
    """The default theme with system fonts (nothing fetched)."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def _error(exc: BaseException) -> gr.Error:
    """The library's one-line message as the page's error toast (no traceback anywhere)."""
    return gr.Error(str(exc), print_exception=False)


def _error_html(exc: BaseException) -> str:
    """The error line kept in a status line (the toast goes away after a while)."""
    return f"<span class='ds-error'>error: {html.escape(str(exc))}</span>"


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or "anonymous"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# -- what components show --------------------------------------------------------------------
def progress_html(event: ProgressEvent | None, *, what: str = "dreaming") -> str:
    """One status line from a progress event: a bar, the step, confidence and distance."""
    if event is None:
        return f"<span>{html.escape(what)}: starting…</span>"
    parts = [f"step {event.step}" + (f"/{event.total}" if event.total else "")]
    if event.confidence is not None:
        parts.append(f"confidence {event.confidence:.3f}")
    if event.rmse_db is not None:
        parts.append(f"rmse_db {event.rmse_db:.2f} dB")
    bar = f"<progress value='{event.step}' max='{event.total}'></progress>" if event.total \
        else ""
    tail = " — rendering and judging the written file…" if event.total and \
        event.step >= event.total else ""
    return f"{bar}<span>{html.escape(what)}: {' · '.join(parts)}{tail}</span>"


def _follow(job: Job, status: gr.HTML, what: str) -> Iterator[dict]:
    """A job's progress as updates of a status line until it ends. If the page goes away
    first (the event's generator is closed), the job is cancelled: no one holds the model for
    a dream nobody will see."""
    try:
        yield {status: progress_html(None, what=what)}
        for event in job.updates():
            if event is not None:
                yield {status: progress_html(event, what=what)}
    finally:
        if job.running():
            job.cancel()


def report_markdown(report: dict) -> str:
    """The report as a small table: confidences before/after/rendered, top classes, distance."""
    target = report["target"] or (f"layer {report['layer']}" if report["layer"] else "–")
    rows = ["| | before | after (dreamed) | rendered (file) |", "|---|---|---|---|"]
    if report["objective"] != "layer":
        rows.append(f"| confidence of **{html.escape(str(target))}** | "
                    f"{_fmt(report['confidence_before'])} | {_fmt(report['confidence_after'])} "
                    f"| {_fmt(report['confidence_rendered'])} |")
    else:
        rows.append(f"| layer energy | {report['objective_before']:.4g} | "
                    f"{report['objective_after']:.4g} | – |")

    def top(key: str) -> str:
        return ", ".join(f"{html.escape(t['name'])} {t['score']:.2f}" for t in report[key])

    rows.append(f"| top classes | {top('top_before')} | {top('top_after')} | "
                f"{top('top_rendered')} |")
    rows.append(f"| distance to the original | – | rmse_db {report['rmse_db']:.2f} dB | "
                f"rmse_db {report['rmse_db_rendered']:.2f} dB |")
    for judge in report.get("judges", []):
        if judge.get("target") is None:  # the judge has no class for the target
            rows.append(f"| judge {html.escape(judge['model'])} | – | – | "
                        f"{html.escape(str(judge.get('note', '')))} |")
            continue
        moved = " (moved)" if judge.get("moved") else ""
        rows.append(f"| judge {html.escape(judge['model'])}: {html.escape(judge['target'])} "
                    f"| {_fmt(judge['confidence_before'])} | – | "
                    f"{_fmt(judge['confidence_after'])}{moved} |")
    stopped = " (reached until)" if report["stopped"] == "until" else ""
    rule = f", rule {report['rule']}" if report["rule"] else ""
    summary = (f"**{report['model']}** · {report['domain']}{rule} · {report['steps']} steps"
               f"{stopped} · {report['seconds']:.1f} s · {report['duration_s']:.1f} s of audio")
    return summary + "\n\n" + "\n".join(rows)


def gallery_rows(entries: Sequence[dict]) -> list[list[Any]]:
    """One table row per dream of the session."""
    rows = []
    for entry in entries:
        r = entry["report"]
        rows.append([entry["number"], entry["title"].split(" ", 1)[1].split(" → ")[0],
                     r["target"] or (f"layer {r['layer']}" if r["layer"] else "–"), r["model"],
                     r["domain"], r["steps"], _fmt(r["confidence_before"]),
                     _fmt(r["confidence_after"]), _fmt(r["confidence_rendered"]),
                     f"{r['rmse_db']:.2f}", f"{r['seconds']:.1f}"])
    return rows


def _entry(entries: Sequence[dict], number: int | None) -> dict | None:
    return next((e for e in entries if e["number"] == number), None)


# -- controls -----------------------------------------------------------------------------------
def knob_component(control: KnobControl) -> gr.components.Component:
    """The component of one knob: its label, help (with the CLI flag), default and bounds."""
    common: dict[str, Any] = {"label": control.label, "info": control.help,
                              "elem_id": f"knob-{control.name}"}
    # An empty optional knob is either off (until) or filled in by another knob (step size).
    empty = "default" if "default" in control.help.lower() else "off"
    if control.kind == "bool":
        return gr.Checkbox(value=control.default, **common)
    if control.kind == "choice":
        choices: list[Any] = list(control.choices)
        if control.optional:
            choices = [(empty, ""), *choices]
        return gr.Dropdown(choices=choices, value=control.default or "", **common)
    if control.kind == "text" or control.optional:
        # A text box, so that empty can mean off/default (a number box shows 0 for nothing).
        text = "" if control.default is None else str(control.default)
        return gr.Textbox(value=text, placeholder=empty, max_lines=1, **common)
    return gr.Number(value=control.default, precision=0 if control.kind == "int" else None,
                     minimum=control.minimum, maximum=control.maximum,
                     step=1 if control.kind == "int" else 0.01, **common)


def _knobs_as_keywords(fn: Any, names: Sequence[str]) -> Any:
    """Show gradio (and so the API page and ``gradio_client``) ``fn``'s ``**knobs`` as keyword
    parameters named after the knobs, each optional: a client passes only what it changes and
    the rest keeps the page's defaults."""
    signature = inspect.signature(fn)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
               for name in names]
    fn.__signature__ = signature.replace(parameters=params)
    return fn


def _knob_rows(controls: Sequence[KnobControl], per_row: int = 4
               ) -> dict[str, gr.components.Component]:
    made = {}
    for start in range(0, len(controls), per_row):
        with gr.Row():
            for control in controls[start:start + per_row]:
                made[control.name] = knob_component(control)
    return made


def _player(label: str, elem_id: str) -> gr.Audio:
    return gr.Audio(label=label, type="filepath", interactive=False, elem_id=elem_id,
                    buttons=["download"])


@dataclasses.dataclass
class _EntryView:
    """The components that show one dream (the Dream tab's result, or a gallery column)."""

    original: gr.Audio
    dream: gr.Audio
    gradient: gr.Audio
    figure: gr.Image
    report: gr.Markdown
    files: gr.File

    @classmethod
    def build(cls, prefix: str, *, side_by_side: bool = True) -> _EntryView:
        with gr.Row(equal_height=True) if side_by_side else gr.Column():
            original = _player("original", f"{prefix}original")
            dream = _player("dream", f"{prefix}dream")
            gradient = _player("gradient sonification", f"{prefix}gradient")
        figure = gr.Image(label="spectrograms: original, dream, difference, gradient",
                          type="filepath", interactive=False, elem_id=f"{prefix}figure")
        with gr.Row():
            with gr.Column(scale=3):
                report = gr.Markdown(elem_id=f"{prefix}report", elem_classes=["ds-report"])
            with gr.Column(scale=2):
                files = gr.File(label="downloads (audio, gradient, original, figure, JSON)",
                                file_count="multiple", interactive=False,
                                elem_id=f"{prefix}files")
        return cls(original, dream, gradient, figure, report, files)

    def components(self) -> list[gr.components.Component]:
        return [self.original, self.dream, self.gradient, self.figure, self.report, self.files]

    def values(self, entry: dict | None) -> dict[gr.components.Component, Any]:
        if entry is None:
            return {c: None for c in self.components()}
        return {self.original: entry["original"], self.dream: entry["audio"],
                self.gradient: entry["gradient"], self.figure: entry["plot"],
                self.report: f"### {entry['title']}\n\n" + report_markdown(entry["report"]),
                self.files: entry["files"]}


# -- the page -----------------------------------------------------------------------------------
def build_app(studio: Studio) -> gr.Blocks:
    """The studio page over ``studio`` (not launched; see :func:`serve`)."""
    from dreamsound.api import Dreamer

    main_controls, advanced_controls = main_and_advanced()
    dream_controls = [*main_controls, *advanced_controls]
    s_controls = sonify_controls()
    sonify_steps_default = inspect.signature(Dreamer.sonify).parameters["steps"].default
    models = model_choices()
    first_classes = studio.class_names(studio.default_model)
    first_layers = studio.layer_names(studio.default_model)

    with gr.Blocks(title="dreamsound studio", analytics_enabled=False,
                   delete_cache=(3600, 86400)) as page:
        gallery = gr.State([])
        gr.Markdown("## dreamsound studio\nMake a sound more like what a classifier hears. "
                    "Upload or record a sound (or start from noise), pick a class, dream, and "
                    "listen to the original, the dream and the gradient side by side.")
        with gr.Row():
            with gr.Column(scale=3):
                sound = gr.Audio(label="sound (upload or record)",
                                 sources=["upload", "microphone"], type="filepath",
                                 elem_id="sound")
            with gr.Column(scale=2):
                model = gr.Dropdown(choices=[(m.label, m.name) for m in models],
                                    value=studio.default_model, label="model",
                                    info="Registry models (`dreamsound models`).",
                                    elem_id="model")
                start = gr.Dropdown(choices=[("the sound on the left", ""),
                                             *[(s, s) for s in GENERATED_STARTS]],
                                    value="", allow_custom_value=True, label="start from",
                                    info="Or a generated start: noise:3s, sine:440:3s, "
                                         "silence:3s (type your own length).",
                                    elem_id="start")

        with gr.Tabs(selected="dream") as tabs:
            with gr.Tab("Dream", id="dream"):
                with gr.Row():
                    target = gr.Dropdown(choices=first_classes, value=None,
                                         allow_custom_value=True, label="target class",
                                         info="Type to search; 'violin:1,flute:0.5' mixes "
                                              "classes; empty: the sound's own top class.",
                                         elem_id="target", scale=3)
                    run = gr.Button("Dream", variant="primary", elem_id="run", scale=1)
                    cancel = gr.Button("Cancel", variant="stop", elem_id="cancel", scale=1)
                main_knobs = _knob_rows(main_controls, per_row=len(main_controls))
                with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                    with gr.Row():
                        layer = gr.Dropdown(choices=["", *first_layers], value="",
                                            label="layer objective",
                                            info="Ascend this layer's activation energy "
                                                 "instead of a class (clear the target).",
                                            elem_id="layer")
                        channel = gr.Textbox(value="", placeholder="all", max_lines=1,
                                             label="channel",
                                             info="Only this channel of the layer.",
                                             elem_id="channel")
                        judges = gr.Dropdown(choices=[(m.label, m.name) for m in models],
                                             value=[], multiselect=True, label="judges",
                                             info="Models outside the dream that listen to "
                                                  "the written dream: does it transfer?",
                                             elem_id="judges")
                    advanced_knobs: dict[str, gr.components.Component] = {}
                    # Panels in the CLI's order; a panel the CLI does not list yet still shows.
                    for panel in dict.fromkeys([*PANELS, *(c.panel for c in advanced_controls)]):
                        members = [c for c in advanced_controls if c.panel == panel]
                        if members:
                            gr.Markdown(f"**{panel}**")
                            advanced_knobs.update(_knob_rows(members))
                status = gr.HTML("", elem_id="status")
                result = _EntryView.build("result-")
                again = gr.Button("Dream again from this result", elem_id="again")

            with gr.Tab("Gallery", id="gallery"):
                gr.Markdown("Every dream of this session. Pick two to compare; download any.")
                table = gr.Dataframe(headers=GALLERY_COLUMNS, value=[], interactive=False,
                                     elem_id="gallery-table")
                with gr.Row():
                    views, picks, agains = [], [], []
                    for side in ("A", "B"):
                        with gr.Column():
                            picks.append(gr.Dropdown(choices=[], value=None,
                                                     label=f"dream {side}",
                                                     elem_id=f"pick-{side}"))
                            views.append(_EntryView.build(f"{side}-", side_by_side=False))
                            agains.append(gr.Button(f"Dream again from {side}",
                                                    elem_id=f"again-{side}"))

            with gr.Tab("Sonify", id="sonify"):
                gr.Markdown("The gradient as sound: where the model wants more energy.")
                with gr.Row():
                    s_target = gr.Dropdown(choices=first_classes, value=None,
                                           allow_custom_value=True, label="target class",
                                           elem_id="sonify-target", scale=3)
                    s_layer = gr.Dropdown(choices=["", *first_layers], value="",
                                          label="or a layer", elem_id="sonify-layer", scale=2)
                    s_steps = gr.Number(value=sonify_steps_default, precision=0, minimum=1,
                                        label="steps", info="1: the gradient at the sound; "
                                        "N: the evolving gradient of N dream steps.",
                                        elem_id="sonify-steps", scale=1)
                    s_run = gr.Button("Sonify", variant="primary", elem_id="sonify-run",
                                      scale=1)
                s_knobs = _knob_rows(s_controls)
                s_status = gr.HTML("", elem_id="sonify-status")
                s_audio = _player("sonified gradient", "sonify-audio")
                s_report = gr.JSON(label="report", elem_id="sonify-report")

            with gr.Tab("Classify", id="classify"):
                gr.Markdown("What the model hears in the sound (mean over patches).")
                with gr.Row():
                    top_k = gr.Number(value=5, precision=0, minimum=1, label="top classes",
                                      elem_id="classify-top", scale=1)
                    c_run = gr.Button("Classify", variant="primary", elem_id="classify-run",
                                      scale=1)
                c_label = gr.Label(label="scores", elem_id="classify-label")

        # -- events ------------------------------------------------------------------------
        dream_outputs = [status, *result.components(), gallery, table,
                         *picks, *[c for v in views for c in v.components()]]

        def on_model(name: str, wanted: str | None, s_wanted: str | None
                     ) -> tuple[Any, ...]:
            # A model that cannot load (weights not downloaded) empties the lists and says why;
            # a dream on it then fails with the same one-line message.
            classes: list[str] = []
            layers = [""]
            try:
                classes = studio.class_names(name)
                layers += studio.layer_names(name)
            except DreamsoundError as exc:
                gr.Warning(str(exc))
            keep = [w if w in classes else None for w in (wanted, s_wanted)]
            return (gr.update(choices=classes, value=keep[0]),
                    gr.update(choices=layers, value=""),
                    gr.update(choices=classes, value=keep[1]),
                    gr.update(choices=layers, value=""))

        model.change(on_model, [model, target, s_target], [target, layer, s_target, s_layer],
                     concurrency_id=_CONCURRENCY_ID, concurrency_limit=1, api_name="model")

        def run_dream(sound: str | None = None, start: str | None = None,
                      model: str | None = None, target: str | None = None,
                      layer: str | None = None, channel: str | None = None,
                      judges: list[str] | None = None, entries: list[dict] | None = None,
                      request: gr.Request = None, **knobs: Any) -> Iterator[dict]:
            session = _session(request)
            try:
                config = config_from_values(knobs, dream_controls)
            except DreamsoundError as exc:
                yield {status: _error_html(exc)}
                raise _error(exc) from None
            job = studio.start(session, lambda progress: studio.dream(
                session, sound=sound, start=start, model=model, target=target, layer=layer,
                channel=channel, config=config, judges=judges or (),
                progress=progress))
            yield from _follow(job, status, "dreaming")
            try:
                entry: DreamEntry = job.result()
            except Cancelled as exc:
                yield {status: f"<span>{html.escape(str(exc))}</span>"}
                return
            except DreamsoundError as exc:
                yield {status: _error_html(exc)}
                raise _error(exc) from None
            for message in job.warnings:
                gr.Warning(message)
            item = dataclasses.asdict(entry)
            entries = [*(entries or []), item]
            choices = [(e["title"], e["number"]) for e in entries]
            previous = entries[-2]["number"] if len(entries) > 1 else None
            update = {status: f"<span>done: {html.escape(entry.title)}</span>",
                      gallery: entries, table: gallery_rows(entries),
                      picks[0]: gr.update(choices=choices, value=entry.number),
                      picks[1]: gr.update(choices=choices, value=previous)}
            update.update(result.values(item))
            update.update(views[0].values(item))
            update.update(views[1].values(_entry(entries, previous)))
            yield update

        dream_knobs = {**main_knobs, **advanced_knobs}
        run.click(
            _knobs_as_keywords(run_dream, list(dream_knobs)),
            inputs=[sound, start, model, target, layer, channel, judges, gallery],
            inputs_kwargs=dream_knobs, outputs=dream_outputs,
            api_name="dream", concurrency_id=_CONCURRENCY_ID, concurrency_limit=1,
            show_progress="minimal", show_progress_on=[status],
            # Dream clicked while a dream still runs (or is still stopping after Cancel): run
            # the latest click next instead of dropping it.
            trigger_mode="always_last")

        def cancel_dream(request: gr.Request) -> str:
            if studio.cancel(_session(request)):
                return "<span>cancelling: the model stops after its current step…</span>"
            return "<span>nothing to cancel</span>"

        # Cancel asks the worker to stop (Job.cancel); the dream's own event then ends normally
        # with "cancelled after step N". Gradio's `cancels=` is not used: killing the event from
        # the page races with its last updates and can leave the page waiting on it.
        cancel.click(cancel_dream, None, status, concurrency_limit=None, api_name="cancel")

        def show(number: int | None, entries: list[dict], view_index: int) -> dict:
            return views[view_index].values(_entry(entries, number))

        for index, (pick, view) in enumerate(zip(picks, views)):
            pick.change(lambda n, e, i=index: show(n, e, i), [pick, gallery], view.components(),
                        api_visibility="private")

        def dream_again(path: str | None) -> tuple[Any, str, Any]:
            if not path:
                raise gr.Error("no dream yet: run one first", print_exception=False)
            return path, "", gr.Tabs(selected="dream")

        again.click(dream_again, result.dream, [sound, start, tabs], api_visibility="private")
        for pick, button in zip(picks, agains):
            button.click(lambda n, e: dream_again((_entry(e, n) or {}).get("audio")),
                         [pick, gallery], [sound, start, tabs], api_visibility="private")

        def run_sonify(sound: str | None = None, start: str | None = None,
                       model: str | None = None, target: str | None = None,
                       layer: str | None = None, steps: float | None = None,
                       request: gr.Request = None, **knobs: Any) -> Iterator[dict]:
            session = _session(request)
            try:
                config = config_from_values({"style": SONIFY_STYLE, **knobs}, s_controls)
            except DreamsoundError as exc:
                yield {s_status: _error_html(exc)}
                raise _error(exc) from None
            job = studio.start(session, lambda progress: studio.sonify(
                session, sound=sound, start=start, model=model, target=target, layer=layer,
                channel=None, steps=int(steps or 1), config=config, progress=progress))
            yield from _follow(job, s_status, "sonifying")
            try:
                entry = job.result()
            except DreamsoundError as exc:
                yield {s_status: _error_html(exc)}
                raise _error(exc) from None
            yield {s_status: "<span>done</span>", s_audio: entry.audio, s_report: entry.report}

        s_run.click(_knobs_as_keywords(run_sonify, list(s_knobs)),
                    inputs=[sound, start, model, s_target, s_layer, s_steps],
                    inputs_kwargs=s_knobs, outputs=[s_status, s_audio, s_report],
                    api_name="sonify", concurrency_id=_CONCURRENCY_ID, concurrency_limit=1)

        def run_classify(sound: str | None = None, start: str | None = None,
                         model: str | None = None, top: float | None = None
                         ) -> dict[str, float]:
            try:
                found = studio.classify(sound=sound, start=start, model=model)
            except DreamsoundError as exc:
                raise _error(exc) from None
            return {name: score for _, name, score in found.top(int(top or 5))}

        c_run.click(run_classify, inputs=[sound, start, model, top_k], outputs=c_label,
                    api_name="classify", concurrency_id=_CONCURRENCY_ID, concurrency_limit=1)
    return page


def serve(studio: Studio, *, host: str = "127.0.0.1", port: int | None = None
          ) -> tuple[gr.Blocks, str]:
    """Build the page and start serving it on ``host:port`` (a free port from 7860 when None)
    in a background thread; returns the page and its local URL. ``page.block_thread()`` waits
    until Ctrl-C; ``page.close()`` stops the server.
    """
    page = build_app(studio)
    page.queue(default_concurrency_limit=1)
    _app, local_url, _share = page.launch(
        server_name=host, server_port=port, share=False, inbrowser=False,
        prevent_thread_lock=True, quiet=True, show_error=False, theme=theme(), css=CSS,
        allowed_paths=[str(studio.out_dir)], run_history=False, ssr_mode=False,
        mcp_server=False, pwa=False, enable_monitoring=False)
    return page, local_url
