"""The lab: campaigns of planned runs, their scheduler and the channel workers that run them.

- :mod:`labctl.app.lab.campaign`: campaign files (load, validate, expand into planned runs);
- :mod:`labctl.app.lab.execute`: one planned run on one channel of a station;
- :mod:`labctl.app.lab.scheduler`: start times (APScheduler, persistent job store, misfire policy);
- :mod:`labctl.app.lab.worker`: a station's channels running due runs concurrently;
- :mod:`labctl.app.lab.locks`: one scheduler per store, one worker per station.

See docs/campaigns.md.
"""
