export { EastWestGatewayController, type EastWestGatewayControllerOptions, type ControllerBackends } from './controller.js';
export { ownImage, IMAGE_ENV, type OwnImage } from './own-image.js';
export { EAST_WEST_CONTROLLER_NAME, EAST_WEST_GATEWAY_CLASS, GATEWAY_NAME_LABEL } from './constants.js';
