"""A small self-hosted web app to collect LiFT ratings (and pairwise judgements) from a team of raters.

``project`` opens the database, ``tasks`` assigns and stores ratings, ``admin`` reports, exports and
reviews, ``app`` is the FastAPI server (its routes in ``ui_routes``, ``rater_routes`` and ``admin_routes``,
what they take from a request in ``dependencies``), ``cli`` the ``videolift annotate`` commands. See
docs/annotate.md.
"""
