"""The offline demos: ``real`` shows zero-shot transfer with a real multilingual encoder
on real data; ``smoke`` runs the machinery on a tiny random encoder in seconds."""
