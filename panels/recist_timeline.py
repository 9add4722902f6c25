"""Panel ``recist_timeline``: each reader's sum of diameters over a patient's timepoints.

A thin adapter over :mod:`multireader.figures.recist_timeline`: one patient at a time
(a drop-down, the patients whose readers' calls differ first), one line per reader with
the reader's RECIST thresholds drawn and every point annotated with the reader's call,
and the calls side by side in a table. A click on a reader's point opens that reader's
measured lesions at that timepoint; the figure stays put while that drill-down is shown
(:class:`panels._common.DrillDown`).
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from multireader.figures import recist_timeline as RT

from ._common import SHOWN_ERRORS, DrillDown, OperatorButtons, take_choice

HELP = """Each reader's RECIST 1.1 assessment of one patient, from the stored RECIST run.

One line per reader: the sum of the target-lesion diameters at every timepoint, each
follow-up's point labelled with the reader's response (CR, PR, SD, PD, NE). In the
reader's colour, dotted: the partial-response line (30 % under the reader's baseline
sum); dashed: the progression line at each follow-up (20 % and at least 5 mm over the
reader's nadir). Shaded follow-ups are discordant: the readers' calls differ there, and
a trial would send them to adjudication. The table gives the calls side by side, with
any adjudicated call beside the readers'.

Patients whose readers disagree come first in the drop-down. Click a point to open the
samples where that reader measured the patient at that timepoint, with the reader's
target lesions. Run "Compute RECIST agreement" again after new measurements."""

OPERATOR = "@multireader/disagreement/compute_recist_agreement"


class RecistTimeline(DrillDown, OperatorButtons, foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="recist_timeline",
            label="RECIST timeline",
            icon="timeline",
            help_markdown=HELP,
            surfaces="grid",
        )

    # --- events -----------------------------------------------------------------
    def on_load(self, ctx):
        self._compute(ctx)

    def on_change_dataset(self, ctx):
        for name in ("run_key", "patient"):
            ctx.panel.state.set(name, None)
        self._compute(ctx)

    def on_change_view(self, ctx):
        if self.view_unchanged(ctx):
            return
        self._compute(ctx)

    def on_change_choice(self, ctx):
        if not take_choice(ctx):
            return
        if ctx.panel.state.drill:  # the figure is of the figure's view: go back to it
            self.on_back(ctx)
            self._compute(ctx, view=self.base_view(ctx))
        else:
            self._compute(ctx)

    def run_recist(self, ctx):
        ctx.prompt(OPERATOR)

    def on_point_click(self, ctx):
        state = ctx.panel.state.timeline
        hit = RT.point_of(state, ctx.params.get("trace"), ctx.params.get("idx"))
        if hit is None:
            return
        reader, t = hit
        view = RT.point_view(self.base_view(ctx), state, reader, t)
        self.drill(ctx, view, RT.point_description(state, reader, t))

    # --- state ------------------------------------------------------------------
    def _compute(self, ctx, view=None):
        st = ctx.panel.state
        if view is None:
            self.remember_view(ctx)
            view = ctx.view
        st.drill = None
        try:
            st.runs = RT.recist_runs(ctx.dataset)
            if st.run_key not in st.runs:
                st.run_key = st.runs[0] if st.runs else None
            res = RT.load_run(ctx.dataset, st.run_key)
            patients = RT.view_patients(view, res)
        except RT.NoRecist as e:
            st.message, st.action, st.timeline = str(e), e.action, None
            return
        except SHOWN_ERRORS as e:
            st.message, st.action, st.timeline = f"Cannot show the RECIST run: {e}", None, None
            return
        if st.patient not in patients:
            st.patient = patients[0]
        st.patients = patients
        st.patient_labels = RT.patient_labels(res, patients)
        tl = RT.timeline(res, st.patient)
        st.message, st.action = None, None
        st.timeline = tl.state()
        st.summary = RT.summary_text(tl)
        st.table = RT.calls_table(tl)
        st.layout = RT.layout(tl)
        st.n_discordant = sum(1 for p in patients if RT.discordant_followups(res, p))
        # a fresh property name per result: Plotly does not cleanly redraw a figure whose
        # traces changed
        st.rev = (st.rev or 0) + 1
        ctx.panel.set_data(f"timeline_{st.rev}", RT.traces(tl))

    # --- layout -----------------------------------------------------------------
    def render(self, ctx):
        panel = types.Object()
        st = ctx.panel.state
        gv = types.GridView(orientation="vertical", gap=1, pad=2)
        if st.message or not st.timeline:
            panel.md(st.message or "Loading the RECIST run...", name="message")
            if st.action == "compute_recist_agreement":
                panel.btn(
                    "action_compute_recist_agreement",
                    label="Compute RECIST agreement",
                    on_click=self.run_recist,
                    variant="contained",
                )
            else:
                self.action_button(panel, st.action)
            return types.Property(panel, view=gv)
        row = panel.h_stack("choices", gap=2, align_y="center")
        if len(st.runs or []) > 1:
            row.enum(
                "run_key",
                st.runs,
                default=st.run_key,
                label="RECIST run",
                view=types.DropdownView(),
                on_change=self.on_change_choice,
            )
        patients = types.DropdownView()
        for p in st.patients:
            patients.add_choice(p, label=st.patient_labels[p])
        row.enum(
            "patient",
            list(st.patients),
            default=st.patient,
            label=f"Patient ({st.n_discordant} of {len(st.patients)} discordant)",
            view=patients,
            on_change=self.on_change_choice,
        )
        if not self.drill_header(panel, ctx):
            panel.md(st.summary, name="summary_text")
        panel.plot(
            f"timeline_{st.rev}",
            layout=st.layout,
            config={"displayModeBar": False, "scrollZoom": False, "responsive": True},
            on_click=self.on_point_click,
        )
        panel.md(st.table, name="calls_table")
        return types.Property(panel, view=gv)
