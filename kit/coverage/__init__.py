"""`kit coverage`: which sentences of the installed man pages the specs check.

manpage.py renders an installed page to plain text (man-db), sentences.py splits it into
sections and sentences and finds a quote in them, marks.py loads the sentence data
(sentences/*.yaml: what is not a claim, what cannot be tested, and why), compute.py puts
the three together per page, render.py prints the result. The report writers get only the
plain summary that compute.report_summary() returns.
"""
