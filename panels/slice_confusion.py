"""Panel ``slice_confusion``: any two label fields, one confusion matrix per slice.

A thin adapter over :mod:`multireader.analyses.slice_confusion`: the choices live in the panel's
state, the numbers are recomputed from the current view when it or a choice changes,
and a click on a cell sets the App's view to the samples behind it.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from multireader.errors import MultireaderError

from ._common import (
    SHADE_SCALE,
    SHARE_SCALE,
    SHOWN_ERRORS,
    ConsensusButton,
    DrillDown,
    OperatorButtons,
    take_choice,
)

_MAX_COLUMNS = 4


def _short(name: str) -> str:
    return name.replace("_", " ")


class SliceConfusion(DrillDown, OperatorButtons, ConsensusButton, foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="slice_confusion",
            label="Confusion by slice",
            icon="grid_on",
            surfaces="grid",
            help_markdown=(
                "Compare any two label fields (reader vs reader, reader vs consensus, "
                "model vs consensus) with one confusion matrix per slice of a metadata "
                "field. Click a cell to see its samples."
            ),
        )

    # --- events -----------------------------------------------------------------
    def on_load(self, ctx):
        self._defaults(ctx)
        self.remember_view(ctx)
        self._refresh(ctx, ctx.view)

    def on_change_view(self, ctx):
        if self.view_unchanged(ctx):  # the samples behind a click: keep the matrices
            return
        self.remember_view(ctx)
        self._refresh(ctx, ctx.view)

    def on_change_choice(self, ctx):
        if not take_choice(ctx):
            return
        if ctx.panel.state.drill:  # new matrices are of the matrices' view: go back to it
            self.on_back(ctx)
        self._refresh(ctx, self.base_view(ctx))

    def on_change_slice(self, ctx):
        if not take_choice(ctx):
            return
        ctx.panel.state.bins_text = ""  # a new field gets its own default bins
        if ctx.panel.state.drill:
            self.on_back(ctx)
        self._refresh(ctx, self.base_view(ctx))

    def on_click_cell(self, ctx):
        from multireader.analyses.slice_confusion import cell_view

        st = ctx.panel.state
        meta = st.meta or {}
        trace = ctx.params.get("trace_idx")
        if trace is None or trace >= len(meta.get("filters", [])):
            return
        a, b = ctx.params.get("y"), ctx.params.get("x")
        slice_filter = meta["filters"][trace]
        view = cell_view(
            self.base_view(ctx), st.field_a, st.field_b, st.slice_field, slice_filter, a, b
        )
        where = meta["names"][trace] if meta.get("names") else ""
        self.drill(
            ctx,
            view,
            f"{st.field_a} = {a}, {st.field_b} = {b}"
            + (f" in {st.slice_field} {where}" if st.slice_field else ""),
        )

    # --- state ------------------------------------------------------------------
    def _defaults(self, ctx):
        from multireader.analyses.slice_confusion import comparable_fields, slice_fields

        st = ctx.panel.state
        fields = comparable_fields(ctx.dataset)
        readers = [f for f in fields if f.startswith("reader_")]
        others = [f for f in fields if f not in readers]
        if st.field_a not in fields:
            st.field_a = readers[0] if readers else (fields[0] if fields else None)
        if st.field_b not in fields or st.field_b == st.field_a:
            rest = [f for f in others + readers if f != st.field_a]
            st.field_b = rest[0] if rest else None
        slices = slice_fields(ctx.dataset)
        if st.slice_field not in slices:
            pick = next((s for s in ("manufacturer_model", "manufacturer") if s in slices), None)
            st.slice_field = pick or (slices[0] if slices else None)
        if st.shade is None:
            st.shade = False

    def _refresh(self, ctx, view):
        from multireader.analyses.slice_confusion import slice_confusion

        st = ctx.panel.state
        st.message = None
        if not st.field_a or not st.field_b:
            st.message = "empty_fields"
            return
        if len(view) == 0:
            st.message = "empty_view"
            return
        shade_field = f"mistakenness_{st.field_a}"
        has_shade = ctx.dataset.has_field(shade_field)
        try:
            bins = _parse_bins(st.bins_text)
            res = slice_confusion(
                view,
                st.field_a,
                st.field_b,
                st.slice_field,
                bins=bins,
                shade_field=shade_field if (st.shade and has_shade) else None,
            )
        except SHOWN_ERRORS as e:
            st.message = f"error: {e}"
            return
        st.has_shade = has_shade
        if res["bins"] and not st.bins_text:
            st.bins_text = ", ".join(f"{e:g}" for e in res["bins"])
        traces, layout = _figure(res, bool(st.shade and has_shade))
        # a fresh property name per refresh: Plotly does not cleanly redraw a figure
        # whose number of traces and axes changed, so each result gets its own plot
        st.rev = (st.rev or 0) + 1
        ctx.panel.set_data(f"matrices_{st.rev}", traces)
        st.layout = layout
        st.meta = {
            "filters": [s["filter"] for s in res["slices"]],
            "names": [s["name"] for s in res["slices"]],
            "n_compared": res["n_compared"],
            "n_samples": res["n_samples"],
            "headline": _headline(res),
        }

    # --- layout -----------------------------------------------------------------
    def render(self, ctx):
        from multireader.analyses.slice_confusion import comparable_fields, slice_fields

        st = ctx.panel.state
        panel = types.Object()
        fields = comparable_fields(ctx.dataset)
        if len(fields) < 2:
            panel.md(
                "### Confusion by slice\n\nThis needs two label fields to compare: import "
                "reader labels, or compute a consensus.",
                name="empty_fields",
            )
            panel.btn("run_consensus", label="Compute consensus", on_click=self.run_consensus)
            return types.Property(panel, view=types.GridView(orientation="vertical"))
        row = panel.h_stack("choices", gap=2, align_y="center")
        row.enum(
            "field_a",
            fields,
            default=st.field_a,
            label="Rows",
            view=types.DropdownView(),
            on_change=self.on_change_choice,
        )
        row.enum(
            "field_b",
            fields,
            default=st.field_b,
            label="Columns",
            view=types.DropdownView(),
            on_change=self.on_change_choice,
        )
        row.enum(
            "slice_field",
            slice_fields(ctx.dataset),
            default=st.slice_field,
            label="Slice by",
            view=types.DropdownView(),
            on_change=self.on_change_slice,
        )
        if st.bins_text:
            row.str(
                "bins_text",
                default=st.bins_text,
                label="Bin edges",
                on_change=self.on_change_choice,
            )
        if st.has_shade:
            row.bool(
                "shade",
                default=bool(st.shade),
                label="Shade by mean mistakenness",
                view=types.SwitchView(),
                on_change=self.on_change_choice,
            )
        message = st.message
        self.drill_header(panel, ctx)
        if message == "empty_view":
            panel.md("The current view is empty: clear the filters to see the matrices.")
            self.action_button(panel, "clear_view")
        elif message and message.startswith("error: "):
            panel.md(f"**Cannot compare:** {message[7:]}")
        elif st.layout:
            meta = st.meta or {}
            panel.md(meta.get("headline", ""), name="headline")
            panel.plot(
                f"matrices_{st.rev}",
                layout=st.layout,
                config={"displayModeBar": False, "responsive": True},
                on_click=self.on_click_cell,
            )
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1))


def _parse_bins(text) -> list[float] | None:
    if not text:
        return None
    parts = [p for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        return sorted(float(p) for p in parts)
    except ValueError as e:  # float()'s
        raise MultireaderError(
            f"bin edges must be numbers separated by commas, got {text!r}"
        ) from e


def _title(s: dict) -> str:
    from multireader.figures.agreement_matrix import fmt_ci

    # three short lines: side-by-side matrices leave each title a narrow column
    return f"<b>{s['name']}</b><br>n = {s['n']}<br>κ {fmt_ci(s['kappa'])}"


def _headline(res: dict) -> str:
    return (
        f"**{res['field_a']}** (rows) against **{res['field_b']}** (columns), by "
        f"**{res['slice_field'] or 'nothing'}**: {res['n_compared']} of {res['n_samples']} "
        f"samples have both labels. Kappa with a 95% bootstrap interval per slice; click "
        f"a cell to see its samples."
    )


def _figure(res: dict, shade: bool) -> tuple[list[dict], dict]:
    """Plotly heatmap traces, one per slice, laid out as small multiples."""
    slices = res["slices"]
    classes = res["classes"]
    n = len(slices)
    cols = min(n, _MAX_COLUMNS)
    rows = (n + cols - 1) // cols
    gap_x, gap_y = 0.06, 0.22
    # at least three columns' worth of width each, so one slice is not a wide banner
    slots = max(cols, 3)
    width = (1 - gap_x * (slots - 1)) / slots
    height = (1 - gap_y * (rows - 1)) / rows
    labels = [_short(c) for c in classes]
    traces, layout = (
        [],
        {
            "margin": {"l": 110, "r": 30, "t": 80, "b": 90},
            "annotations": [],
            "showlegend": False,
            "font": {"size": 12},
        },
    )
    for i, s in enumerate(slices):
        r, c = divmod(i, cols)
        ax = "" if i == 0 else str(i + 1)
        conf = s["confusion"]
        totals = [sum(row) for row in conf]
        share = [[(v / t if t else 0.0) for v in row] for row, t in zip(conf, totals, strict=True)]
        z = s.get("shade") if shade else share
        text = [[str(v) for v in row] for row in conf]
        hover = "rows %{y}<br>columns %{x}<br>%{text} samples"
        hover += "<br>mean mistakenness %{z:.2f}" if shade else "<br>%{z:.0%} of the row"
        traces.append(
            {
                "type": "heatmap",
                "name": s["name"],
                "x": classes,
                "y": classes,
                "z": z,
                "text": text,
                "texttemplate": "%{text}",
                "hovertemplate": hover + "<extra>" + s["name"] + "</extra>",
                "colorscale": SHADE_SCALE if shade else SHARE_SCALE,
                "zmin": 0,
                "zmax": 1,
                "showscale": i == n - 1,
                "colorbar": {
                    "title": {"text": "mean mistakenness" if shade else "share of row"},
                    "len": 0.8,
                },
                "xaxis": f"x{ax}",
                "yaxis": f"y{ax}",
                "xgap": 1,
                "ygap": 1,
            }
        )
        x0 = c * (width + gap_x)
        y1 = 1 - r * (height + gap_y)
        layout[f"xaxis{ax}"] = {
            "domain": [x0, x0 + width],
            "anchor": f"y{ax}",
            "tickvals": classes,
            "ticktext": labels,
            "tickangle": -35,
            "title": {"text": res["field_b"] if r == rows - 1 else ""},
        }
        layout[f"yaxis{ax}"] = {
            "domain": [y1 - height, y1],
            "anchor": f"x{ax}",
            "autorange": "reversed",
            "tickvals": classes,
            "ticktext": labels if c == 0 else [""] * len(classes),
            "title": {"text": res["field_a"] if c == 0 else ""},
        }
        layout["annotations"].append(
            {
                "text": _title(s),
                "x": x0 + width / 2,
                "y": y1,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 12},
            }
        )
    layout["height"] = 150 + 330 * rows
    return traces, layout
