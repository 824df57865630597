"""mimicflow: Emotional Mimicry Intensity estimation, from raw webcam clips to six intensities."""

EMOTIONS: tuple[str, ...] = (
    "Admiration",
    "Amusement",
    "Determination",
    "Empathic Pain",
    "Excitement",
    "Joy",
)

__version__ = "0.1.0"
