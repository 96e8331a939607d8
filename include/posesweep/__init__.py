"""posesweep: a DeepLabCut training-parameter study as one Airflow DAG (see the README)."""

from .quiet import library_info_silenced, opencv_ffmpeg_silenced

library_info_silenced()  # before pandas, tables or GX log their own workings into a task's log
opencv_ffmpeg_silenced()  # before anything opens a video with OpenCV
