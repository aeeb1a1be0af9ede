"""Landmarks for faces in any image: the predictor, the face detector and its box
calibration, and the files of ``src/predict.py``."""

from wingface.inference.detector import BoxCalibration, DlibFaceDetector
from wingface.inference.predictor import FaceLandmarks, LandmarkPredictor

__all__ = ["BoxCalibration", "DlibFaceDetector", "FaceLandmarks", "LandmarkPredictor"]
