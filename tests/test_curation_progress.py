"""A long source's analysis logs how far it is, on a clock (here a stand-in one), with its ETA."""
import logging

from curation import progress


def test_a_line_every_period_with_the_video_seconds_done_and_the_eta(monkeypatch, caplog) -> None:
    clock = iter([0.0, 30.0, 61.0, 90.0, 125.0])  # start, then before frames 250, 500, 750, 1000
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    tracker = progress.SourceProgress("talk.mp4", num_frames=3000, fps=25, every_s=60)  # a 120 s video
    with caplog.at_level(logging.INFO, logger="curation"):
        for index in (250, 500, 750, 1000):
            tracker.frame(index)
    lines = [r.getMessage() for r in caplog.records]
    # 20 s of video in 61 s (0.33x): 100 s left take 305 s; then 40 s in 125 s: 80 s left take 250 s.
    assert lines == ["talk.mp4: analysed 20 of 120 s of video (17%), 0.33x real time, analysis ETA 5m05s; clips follow",
                     "talk.mp4: analysed 40 of 120 s of video (33%), 0.32x real time, analysis ETA 4m10s; clips follow"]
