"""The KServe V2 / Open Inference Protocol (Triton's gRPC and HTTP/REST API), served on
the same ports as TF Serving's: gRPC `inference.GRPCInferenceService` beside
`tensorflow.serving.PredictionService`, and REST `/v2/...` beside `/v1/...`.

Every inference goes through the same `Predictor.predict` as TF Serving's Predict; this
package only converts V2 messages and JSON to and from numpy (`datatypes`, `v2_codec`,
`json_infer`), answers the health and metadata calls (`inference`), maps the model
repository extension onto the model configuration (`repository`), and answers Triton's model
configuration and statistics extensions (`model_config`, `statistics`).
"""
