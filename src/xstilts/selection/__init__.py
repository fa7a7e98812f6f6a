"""Choosing intermediate tasks before paying for them: transferability estimates that
rank each target's intermediate options (``xstilts select``), checked against a
grid's finished runs (``--evaluate``), and a grid's budget mode (``selection:``)."""
