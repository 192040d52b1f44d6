// The error of the training layer (settings that cannot run, data that does not fit the model, a
// diverging loss), printed as one line.

/// An error of training, evaluation or prediction, printed as one line.
public struct TrainError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}
