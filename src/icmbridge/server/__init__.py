"""The surveillance use: edges push bitstreams, the server detects on the machine decoder's output
and shows people the human decoder's (``icmbridge serve`` and ``icmbridge push``).

One bitstream serves both decoders, so the server stores each upload once, as the bytes it
received, and decodes it on demand for whoever asks: the task network (at upload time, before the
201) or a person (a PNG view).
"""
