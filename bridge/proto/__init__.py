"""Generated protobuf/gRPC stubs for greenlight.v1 (committed; regenerate with
``python -m bridge.proto.codegen``). Import the modules you need:
``from bridge.proto.greenlight.v1 import shot_pb2`` needs only protobuf;
``bridge_pb2_grpc`` also needs grpcio."""
