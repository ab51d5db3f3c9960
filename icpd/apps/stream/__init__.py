"""``icpd stream``: frames from a camera, a video file or a folder through the scene pipeline to an
overlay video and a JSONL of per-frame results."""
