"""The verdict: what a session's numbers mean for the user's choice.

Cost model and prices (:mod:`~perfdesk.verdict.cost`), session comparison and the regression gate
(:mod:`~perfdesk.verdict.compare`), session data (:mod:`~perfdesk.verdict.session_data`), export
(:mod:`~perfdesk.verdict.export`) and reports (:mod:`~perfdesk.verdict.report`). It reads sessions (CSV and
manifest); the core never imports it.
"""
