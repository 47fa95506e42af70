"""Workflows: jobs that chain the library (code, finetune, decode, score, report) into one run.

``demo``, ``ablate``, ``compare`` and ``curves`` sit above the library and below the command
layer (:mod:`icmbridge.commands`); the library never imports them.
"""
